"""The README's Python snippets do what the README says they do."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from relax_rl import RelaxA2C

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one ``## section`` of the README."""
    text = README.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_the_first_python_example_trains_on_as_many_envs_as_the_command_line(tmp_path, monkeypatch):
    # A new user's RelaxA2C("MlpPolicy", "CartPole-v1") built one env and trained at a sixth of train.py's speed.
    trained = []
    monkeypatch.setattr(RelaxA2C, "learn", lambda self, *args, **kwargs: trained.append(self) or self)
    monkeypatch.chdir(tmp_path)
    exec(python_blocks("Using it from Python")[0], {})
    (model,) = trained
    assert model.n_envs == 8 and (tmp_path / "relax_cartpole.zip").is_file()


def test_a_single_env_is_warned_about():
    model = RelaxA2C("MlpPolicy", "CartPole-v1", n_steps=5, device="cpu")
    with pytest.warns(UserWarning, match="single env, so each update buys only 5 timesteps"):
        model.learn(10)
    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # two envs: no warning
        RelaxA2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_steps=5, device="cpu").learn(20)


def readme_commands() -> list[str]:
    """Every ``relax-rl ...`` line of the README's bash blocks (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("relax-rl "):
                commands.append(line)
    return commands


def test_the_readme_shows_commands():
    assert len(readme_commands()) > 20


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_parses_as_written(line):
    import importlib
    import shlex

    from relax_rl.cli import COMMANDS

    name, *argv = shlex.split(line)[1:]
    module = importlib.import_module(COMMANDS[name][0])
    prog = f"relax-rl {name}"
    # Each command's own parser (what relax-rl runs first): a flag the README misspells fails here.
    if hasattr(module, "_parser"):
        module._parser(prog).parse_args(argv)
    else:
        module.parse_args(argv, prog)

import sys
from pathlib import Path

# Let tests import their shared helpers (tests/stats.py) without making tests/ a package.
sys.path.insert(0, str(Path(__file__).parent))

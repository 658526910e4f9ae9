from relax_rl.experiments.binary_vae.cli import main

main()

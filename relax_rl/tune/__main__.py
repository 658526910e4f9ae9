from relax_rl.cli.tune import main

raise SystemExit(main())

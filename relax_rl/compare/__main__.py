from relax_rl.cli.compare import main

raise SystemExit(main())

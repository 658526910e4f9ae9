from relax_rl.cli.diagnose import main

raise SystemExit(main())

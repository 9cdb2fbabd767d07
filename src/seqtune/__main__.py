from seqtune.cli import main

raise SystemExit(main())

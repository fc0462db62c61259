from capsviewer.cli import main

raise SystemExit(main())

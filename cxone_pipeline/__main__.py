from cxone_pipeline.cli import main

raise SystemExit(main())

"""``python -m budget_mcp``: the same as the ``budget-mcp`` command."""

from .cli import main

raise SystemExit(main())

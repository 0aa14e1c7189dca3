"""One module per `tritonload` sub-command; each exposes ``add_parser(subparsers)``."""

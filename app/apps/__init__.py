"""Apps: the registry of what investors can buy shares in, and who may see and do what on an app."""

"""The `opensesame` commands, one module per concern; each registers its parsers beside its handlers."""

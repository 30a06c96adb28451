"""Built-in formats. Each module is a plugin, reached only through the registry."""

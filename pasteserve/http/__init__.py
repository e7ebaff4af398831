"""The HTTP/1.1 engine: sans-I/O parser, protocol errors, response serialisation."""

"""The foundation every stage stands on: settings, the model registry and scheduler, executors, the model I/O
loop, metrics, load shedding, heap upkeep, logging and the start-up error types. It imports no other part of
chorus."""

"""The FastAPI service and the `pickwise` command line."""

"""The loopml REST server (FastAPI): tracking now; registry, deployments and auth later."""

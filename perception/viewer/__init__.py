"""The live web viewer (`percept view`): overlay drawing on arrays, the shared state, the web server."""

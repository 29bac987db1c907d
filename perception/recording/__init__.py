"""Recording and replay: MCAP files of our wire messages (mcap_file) with Foxglove views beside them
(foxglove). A tool: the runtime never imports it."""

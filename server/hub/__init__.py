"""/cable: the ActionCable transport (connection, protocol) apart from fan-out (hub)."""

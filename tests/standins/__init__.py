"""Stand-ins for services that cannot run on these machines (each named a stand-in in its file)."""

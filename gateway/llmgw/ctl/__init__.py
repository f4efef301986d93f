"""gatewayctl: the operators' command line for the admin API."""

"""The local stack: the compose topology on one machine, without Docker or GPUs."""

"""Training the shipped detector: targets and crops in numpy (importable anywhere), the network, losses
and loop in torch (the optional `train` extra; nothing at run time imports them)."""

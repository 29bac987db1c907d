"""sim: PyBullet simulator nodes (tabletop and driving scenes). Built in the simulator issue."""

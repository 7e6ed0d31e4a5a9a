"""The model (Sect. 3): adapter, decoder, CAM refinement (TPE, VPE, USR, PAR), losses, checkpoints and profiling."""

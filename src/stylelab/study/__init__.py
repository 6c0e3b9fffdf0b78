"""The seed's study as commands: feature pictures, layer sweeps, backbone comparison, quality metrics."""

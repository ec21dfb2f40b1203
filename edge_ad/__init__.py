"""edge-ad: RGB-D anomaly scoring by GAN latent search (ADGAN adapted to RGB+Depth).

Subpackages (folders at the repository root): ``edge_ad.models`` (torch: nets, training,
reference scorer, evaluation), ``edge_ad.export`` (torch -> ONNX + manifest), ``edge_ad.runtime``
(no torch: preprocessing, sources, backends, Scorer), ``edge_ad.jetson`` (deployment).
"""
__version__ = "0.1.0"

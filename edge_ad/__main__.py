"""``python -m edge_ad ...`` = ``edge-ad ...``; what torchrun starts on every rank:
``torchrun --standalone --nproc_per_node=2 -m edge_ad train ...``."""
from edge_ad.cli import main

if __name__ == "__main__":
    main(prog_name="edge-ad")

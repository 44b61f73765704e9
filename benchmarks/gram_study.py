"""GRAM study: plain L2 vs NLL vs GRAM with the same seed and budget (the code: testing/gram_study.py).

    python benchmarks/gram_study.py --dataset ./sample -p sr-resnet -s 4 --epochs 3 --steps-per-epoch 50
"""
from testing.gram_study import main
from utils import run_cli

if __name__ == "__main__":
    run_cli(main)

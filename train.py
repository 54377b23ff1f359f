"""Train one model for one machine/ID: `python train.py machine=pump id=id_04` (see conf/train.yaml)."""

from machine_sound.train import main

if __name__ == "__main__":
    main()

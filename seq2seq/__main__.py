"""`python -m seq2seq` runs the same CLI as the `seq2seq` command (and works under torchrun)."""

from seq2seq.cli import main

if __name__ == "__main__":
    main()

from capsnap.cli import run

run()

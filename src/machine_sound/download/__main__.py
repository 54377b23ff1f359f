from machine_sound.download.cli import main

if __name__ == "__main__":
    main()

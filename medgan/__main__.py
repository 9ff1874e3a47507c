from medgan.cli import main

main()

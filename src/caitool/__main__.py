from caitool.cli.main import main

main()

from payload.cli import main

main()

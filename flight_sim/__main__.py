from flight_sim.cli import main

main()

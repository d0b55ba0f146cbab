from rtml_profile.cli import main

main()

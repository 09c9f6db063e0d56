from balsam_mp.cli import main

main()

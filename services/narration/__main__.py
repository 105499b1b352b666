from services.narration.app import main

main()

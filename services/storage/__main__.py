from services.storage.app import main

main()

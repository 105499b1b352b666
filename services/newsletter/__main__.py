from services.newsletter.app import main

main()

from services.ingestion.app import main

main()

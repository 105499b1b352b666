from services.linking.app import main

main()

import sys

from secbot.bot.cli.commands import main

sys.exit(main())

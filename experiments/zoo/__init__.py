"""The model zoos: recipes changed one factor at a time (:mod:`.zoo`, :mod:`.zoo_report`) and
a 2^4 factorial design (:mod:`.factorial`, :mod:`.factorial_report`)."""

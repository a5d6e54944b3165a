"""The model zoos: recipes trained and attacked one factor at a time (:mod:`.zoo`) and by a 2^4 factorial design (:mod:`.factorial`), with their reports."""

"""Test configuration: markers and warning filters (the project keeps no pytest.ini at the top level)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slower checks (seconds to a minute); still run in CI")
    # audioread imports modules that Python 3.11 deprecates; nothing the project can change
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:audioread.*")
    config.addinivalue_line("filterwarnings", "ignore:'(aifc|audioop|sunau)' is deprecated:DeprecationWarning")

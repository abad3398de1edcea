"""Why an experiment stopped or did not start: the exceptions the command line tells apart."""


class ExperimentError(Exception):
    """The experiment cannot start or continue as asked (name clash, no GPUs, no such run)."""


class TrialsFailed(Exception):
    """Trials failed for good (after their restarts); rerunning the command retries them."""


class Interrupted(Exception):
    """Training stopped before every trial finished (Ctrl+C, SIGUSR1); rerun to continue."""

"""TensorBoard event files read back with tensorboard's own EventAccumulator (what TensorBoard shows)."""
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def events(log_dir):
    """The EventAccumulator of every event file in `log_dir`, all events kept, restarts purged as TensorBoard
    purges them."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def scalars(log_dir):
    """{tag: [(step, value)]} of the scalars in `log_dir`, in the order TensorBoard shows them."""
    accumulator = events(log_dir)
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def scalar_steps(log_dir):
    """{tag: [step]} of the scalars in `log_dir`."""
    return {tag: [step for step, _ in values] for tag, values in scalars(log_dir).items()}

"""Which speakers make each simulated SuperNode? The train split grouped by speaker.

flwr-datasets' ``GroupedNaturalIdPartitioner`` puts ``speakers-per-node`` speakers on each
node (Speech Commands v0.02: 2,112 speakers, 422 nodes of 5); noise recordings have no
speaker and belong to no partition. A simulation must have exactly as many SuperNodes as
the data makes partitions; a mismatch is an error naming the ``--federation-config`` to use.
"""

from whisper_example.data.sources import DataSourceError, load_source, speech_rows
from whisper_example.system.process_memo import remembered


@remembered(maxsize=4)
def _partitioner(source: str, subset: str, speakers_per_node: int):
    from flwr_datasets.partitioner import GroupedNaturalIdPartitioner

    partitioner = GroupedNaturalIdPartitioner(
        partition_by="speaker_id", group_size=speakers_per_node, mode="allow-bigger", sort_unique_ids=True
    )
    partitioner.dataset = speech_rows(load_source(source, subset)["train"])
    return partitioner


def count_partitions(source: str, subset: str, speakers_per_node: int) -> int:
    """How many SuperNodes the train split makes: speakers // speakers-per-node."""
    return _partitioner(source, subset, speakers_per_node).num_partitions


def partition_rows(source: str, subset: str, speakers_per_node: int, partition_id: int, num_partitions: int):
    """The train rows of one SuperNode; the federation size must match the partition count."""
    expected = count_partitions(source, subset, speakers_per_node)
    if num_partitions != expected:
        raise DataSourceError(
            f"the federation simulates {num_partitions} SuperNodes, but dataset {source} makes {expected} "
            f'(speakers-per-node={speakers_per_node}): run with --federation-config "num-supernodes={expected}" '
            "or change speakers-per-node"
        )
    if not 0 <= partition_id < expected:
        raise DataSourceError(
            f"partition-id={partition_id} is outside 0..{expected - 1}: dataset {source} makes {expected} SuperNodes "
            f"of speakers-per-node={speakers_per_node}; give an id in that range"
        )
    return _partitioner(source, subset, speakers_per_node).load_partition(partition_id)

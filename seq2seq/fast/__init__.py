"""The fast path: CPU kernels that replace plain pieces of the model, loss and search.

`accelerate(module)` is the one switch: it gives every module in the tree that has a
fast twin the twin's class, in place. A twin is a subclass of its plain piece with the
same parameters and the same outputs (tests/unit/test_fast.py holds it to that), so
checkpoints, state dicts and every caller stay as they are.

    nn.Dropout          -> FastDropout              four elements per random draw
    FeedForward         -> FastFeedForward          dropout's scale folded into w_out
    Residual            -> FastResidual             x + dropout(y) in one pass
    MultiHeadAttention  -> FastMultiHeadAttention   one projection product, fused SDPA,
                                                    beams sharing their sentence's memory
    TeacherForcedLoss   -> FastTeacherForcedLoss    kept logits buffer, loss without log-probs
    Transformer         -> FastTransformer          beams share memory, block top-k
    RNNSeq2Seq          -> FastRNNSeq2Seq           block top-k

The kernels choose by device themselves: on a CPU they run as described; on a GPU and
under torch.compile they call torch's own fused ops (F.dropout, SDPA, topk).
"""

from torch import nn

from seq2seq.fast.attention import FastMultiHeadAttention
from seq2seq.fast.dropout import FastDropout
from seq2seq.fast.layers import FastFeedForward, FastResidual
from seq2seq.fast.loss import FastTeacherForcedLoss
from seq2seq.fast.topk import top_tokens
from seq2seq.loss import TeacherForcedLoss
from seq2seq.model.attention import MultiHeadAttention
from seq2seq.model.layers import FeedForward, Residual
from seq2seq.model.rnn import RNNSeq2Seq
from seq2seq.model.transformer import Transformer


class FastTransformer(Transformer):
    """Transformer whose beams share their sentence's memory (FastMultiHeadAttention
    attends from a group of beams to one row of keys and values, so search need not copy
    memory per beam) and whose search ranks tokens with the block top-k."""

    beams_share_memory = True
    top_k = staticmethod(top_tokens)


class FastRNNSeq2Seq(RNNSeq2Seq):
    """RNNSeq2Seq whose search ranks tokens with the block top-k."""

    top_k = staticmethod(top_tokens)


TWINS: dict[type, type] = {
    nn.Dropout: FastDropout,
    FeedForward: FastFeedForward,
    Residual: FastResidual,
    MultiHeadAttention: FastMultiHeadAttention,
    TeacherForcedLoss: FastTeacherForcedLoss,
    Transformer: FastTransformer,
    RNNSeq2Seq: FastRNNSeq2Seq,
}


def accelerate(module: nn.Module) -> nn.Module:
    """Swap every plain piece in `module`'s tree for its fast twin, in place; returns module.

    Works on a model or on a TeacherForcedLoss (its model included); a piece already fast
    is left as it is, so calling it twice changes nothing.
    """
    for sub in module.modules():
        twin = TWINS.get(type(sub))
        if twin is not None:
            sub.__class__ = twin  # a subclass with no state of its own: the same module
    return module


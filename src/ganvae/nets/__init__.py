"""Plain ``nn.Module`` networks: no losses, no optimizers, no device logic."""

from .dcgan import DCGANDiscriminator, DCGANGenerator, conv_plan
from .mlp import MLPDiscriminator, MLPGenerator
from .vae_nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

__all__ = [
    "DCGANGenerator", "DCGANDiscriminator", "conv_plan",
    "MLPGenerator", "MLPDiscriminator",
    "ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder",
]

"""Plain ``nn.Module`` networks: no losses, no optimizers, no device logic."""

from .dcgan import DCGANDiscriminator, DCGANGenerator, conv_plan
from .mlp import MLPDiscriminator, MLPGenerator
from .resnet import ResNetDiscriminator, ResNetGenerator
from .vae_nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .vamp import PseudoInputs

__all__ = [
    "DCGANGenerator", "DCGANDiscriminator", "conv_plan",
    "MLPGenerator", "MLPDiscriminator",
    "ResNetGenerator", "ResNetDiscriminator",
    "ConvEncoder", "ConvDecoder", "MLPEncoder", "MLPDecoder",
    "PseudoInputs",
]

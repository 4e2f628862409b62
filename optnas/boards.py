"""Microcontroller boards a search can target (``--board``, ``optnas boards``).

A board's SRAM and flash come from its MCU's datasheet (the board's, where the flash is an
external chip). Not all of it is the network's: the reserve is what the firmware around the
model takes, stated per board. The rest bounds the two TensorFlow Lite Micro figures of a
network (:mod:`optnas.networks.tflm_memory`): ``arena_kb`` (the interpreter's tensor arena)
and ``tflite_kb`` (the model's flatbuffer, kept in flash).

Reserves (assumptions, not measurements):

- SRAM, 32 KB on bare-metal and RTOS firmware (Arduino, Mbed, Zephyr): the stack, the
  interpreter and op resolver objects that live outside the arena, and the application's
  input buffer; 192 KB on the ESP32-S3, whose ESP-IDF and FreeRTOS keep part of the internal
  SRAM for themselves.
- Flash, 160 KB: TFLM's interpreter with the eight kernels optnas's networks use (about
  70-100 KB with reference kernels), startup code, a HAL and the application; 512 KB on the
  ESP32-S3 (bootloader, partition table and an ESP-IDF application).

CMSIS-NN kernels (Cortex-M) ask for scratch buffers inside the arena that the reference
kernels do not (see the README's memory section): keep a margin below the bound for them.
"""

from __future__ import annotations

import dataclasses

KB = 1024


@dataclasses.dataclass(frozen=True)
class Board:
    """A microcontroller board and the memory a network may take on it.

    Args:
        name: the name ``--board`` takes.
        title: the board and its MCU.
        core: the CPU core and clock.
        sram_kb: on-chip SRAM (KB = 1024 bytes).
        flash_kb: flash the firmware runs from (on-chip, or the board's external chip).
        sram_reserve_kb: SRAM the firmware around the network takes.
        flash_reserve_kb: flash the firmware around the network takes.
    """

    name: str
    title: str
    core: str
    sram_kb: int
    flash_kb: int
    sram_reserve_kb: int = 32
    flash_reserve_kb: int = 160

    @property
    def arena_budget_kb(self) -> int:
        """The most TFLM arena a network may need on this board (bounds ``arena_kb``)."""
        return self.sram_kb - self.sram_reserve_kb

    @property
    def tflite_budget_kb(self) -> int:
        """The largest flatbuffer a network may have on this board (bounds ``tflite_kb``)."""
        return self.flash_kb - self.flash_reserve_kb

    def excess(self, arena_kb: float, tflite_kb: float) -> list[str]:
        """Say what of a network does not fit this board, one phrase per memory (none: it fits).

        Args:
            arena_kb: the network's TFLM arena (KB), predicted or measured.
            tflite_kb: its flatbuffer (KB).
        """
        needs = (("arena_kb", arena_kb, self.arena_budget_kb, self.sram_kb, "SRAM", self.sram_reserve_kb),
                 ("tflite_kb", tflite_kb, self.tflite_budget_kb, self.flash_kb, "flash", self.flash_reserve_kb))
        return [f"{need:.1f} KB {figure} where it leaves {budget} KB ({total} KB {memory} less a {reserve} KB "
                f"reserve)" for figure, need, budget, total, memory, reserve in needs if need > budget]


BOARDS: dict[str, Board] = {board.name: board for board in (
    Board("stm32f746", "STM32F746G-DISCO (STM32F746NG)", "Cortex-M7, 216 MHz", sram_kb=320, flash_kb=1024),
    Board("stm32f412", "NUCLEO-F412ZG (STM32F412ZG)", "Cortex-M4F, 100 MHz", sram_kb=256, flash_kb=1024),
    Board("nrf52840", "nRF52840 DK / Arduino Nano 33 BLE (nRF52840)", "Cortex-M4F, 64 MHz",
          sram_kb=256, flash_kb=1024),
    Board("rp2040", "Raspberry Pi Pico (RP2040, 2 MB QSPI flash)", "2x Cortex-M0+, 133 MHz",
          sram_kb=264, flash_kb=2048),
    Board("rp2350", "Raspberry Pi Pico 2 (RP2350, 4 MB QSPI flash)", "2x Cortex-M33, 150 MHz",
          sram_kb=520, flash_kb=4096),
    Board("esp32s3", "ESP32-S3-DevKitC-1-N8 (ESP32-S3, 8 MB flash, no PSRAM used)", "2x Xtensa LX7, 240 MHz",
          sram_kb=512, flash_kb=8192, sram_reserve_kb=192, flash_reserve_kb=512),
)}


def board_key(name: str) -> str:
    """Return the registry key of a board name as users write it (``STM32F746``, ``esp32-s3``).

    Args:
        name: a board name, in any case, with or without dashes and underscores.
    """
    return name.lower().replace("-", "").replace("_", "")


def find_board(name: str) -> Board | None:
    """Return the board of a name as users write it, None when there is none.

    Args:
        name: a board name (see :func:`board_key`).
    """
    return BOARDS.get(board_key(name))

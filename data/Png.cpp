#include "data/Png.h"

#include <png.h>

#include <cstdio>
#include <vector>

#include "core/AtomicFile.h"
#include "core/Error.h"

namespace lddpm::data {

torch::Tensor toGrey(const torch::Tensor& slice, double lo, double hi) {
  LDDPM_CHECK(slice.dim() == 2, "toGrey: expected a [H, W] slice");
  const double scale = hi > lo ? 255.0 / (hi - lo) : 0.0;
  return ((slice.to(torch::kFloat64) - lo) * scale)
      .clamp(0, 255)
      .round()
      .to(torch::kUInt8)
      .flip({0});
}

namespace {

// Everything libpng does after its error handler is armed. A separate frame: locals of the
// function that calls setjmp may be clobbered by the longjmp (GCC's -Wclobbered).
void writeImage(png_structp png, png_infop info, std::FILE* file, const torch::Tensor& img) {
  const auto height = static_cast<png_uint_32>(img.size(0));
  const auto width = static_cast<png_uint_32>(img.size(1));
  const int channels = img.dim() == 3 ? 3 : 1;
  png_init_io(png, file);
  png_set_IHDR(png, info, width, height, 8,
               channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const auto* base = img.data_ptr<std::uint8_t>();
  for (png_uint_32 y = 0; y < height; ++y) {
    png_write_row(png, const_cast<png_bytep>(base + static_cast<size_t>(y) * width * channels));
  }
  png_write_end(png, nullptr);
}

}  // namespace

void writePng(const std::string& path, const torch::Tensor& pixels) {
  LDDPM_CHECK(pixels.scalar_type() == torch::kUInt8 &&
                  (pixels.dim() == 2 || (pixels.dim() == 3 && pixels.size(2) == 3)),
              "writePng: expected uint8 [H, W] or [H, W, 3]");
  const torch::Tensor img = pixels.contiguous();

  const std::string temp = core::temporarySibling(path);
  std::FILE* file = std::fopen(temp.c_str(), "wb");
  if (!file) throw core::IoError(path, "cannot create '" + temp + "'");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info || setjmp(png_jmpbuf(png))) {  // libpng reports errors by longjmp
    png_destroy_write_struct(&png, &info);
    std::fclose(file);
    std::remove(temp.c_str());
    throw core::IoError(path, "libpng failed to write the image");
  }
  writeImage(png, info, file, img);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(file) != 0) {
    std::remove(temp.c_str());
    throw core::IoError(path, "write failed (disk full?)");
  }
  core::publish(temp, path);
}

}  // namespace lddpm::data
